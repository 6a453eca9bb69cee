//! The shared-library closure of host binaries, read from their ELF dynamic
//! sections with goblin (never by running `ldd`, which executes the binary).
//!
//! For each object: PT_INTERP is added as-is; each DT_NEEDED name is searched
//! like the dynamic loader does, in the object's DT_RUNPATH (or DT_RPATH when
//! there is no RUNPATH) with `$ORIGIN` expanded, then in the directories of
//! `/etc/ld.so.conf` (following `include` globs), then in the default
//! directories for the host's multiarch triplet. The path found is added
//! through [`HostTree::add`], so every symlink the loader walks exists in the
//! image too.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use goblin::elf::{header, Elf};

use super::hostfs::HostTree;
use super::ImageError;

/// What a closure added beyond the objects themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// Resolved image paths of every ELF object added (binaries, interpreter, libraries).
    pub objects: BTreeSet<String>,
    /// Library directories used that the loader does not search by default
    /// (they came from RUNPATH or ld.so.conf); without an ld.so.cache in the
    /// image these need an `/etc/ld.so.conf` entry plus `ldconfig`.
    pub extra_lib_dirs: BTreeSet<String>,
}

/// Adds `binaries` (absolute paths) and their full library closure to `tree`.
pub fn add_with_libraries(tree: &mut HostTree, binaries: &[&str]) -> Result<Closure, ImageError> {
    let conf_dirs = ld_so_conf_dirs(&tree.host_path("/etc/ld.so.conf"));
    let defaults = default_lib_dirs();
    let mut closure = Closure::default();
    let mut queue: VecDeque<String> = binaries.iter().map(|b| b.to_string()).collect();
    while let Some(path) = queue.pop_front() {
        let real = tree.add(&path)?;
        if !closure.objects.insert(real.clone()) {
            continue;
        }
        let host = tree.host_path(&real);
        let bytes = fs::read(&host).map_err(ImageError::io("cannot read", &host))?;
        if !bytes.starts_with(b"\x7fELF") {
            continue; // a script: its interpreter must be listed explicitly
        }
        let elf_err = |reason: String| ImageError::Elf {
            path: host.clone(),
            reason,
        };
        let elf = Elf::parse(&bytes).map_err(|e| elf_err(format!("not a valid elf file: {e}")))?;
        if let Some(interp) = elf.interpreter {
            queue.push_back(interp.to_string());
        }
        let origin = Path::new(&real)
            .parent()
            .map_or("/".into(), |p| p.to_string_lossy().into_owned());
        // RUNPATH wins over RPATH when both are present, as in glibc.
        let search_path = if elf.runpaths.is_empty() {
            &elf.rpaths
        } else {
            &elf.runpaths
        };
        let own_dirs: Vec<String> = search_path
            .iter()
            .flat_map(|p| p.split(':'))
            .filter(|d| !d.is_empty())
            .map(|d| d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin))
            .collect();
        let class = elf.header.e_ident[header::EI_CLASS];
        for needed in &elf.libraries {
            if needed.contains('/') {
                queue.push_back(needed.to_string());
                continue;
            }
            let dirs = own_dirs.iter().chain(&conf_dirs).chain(&defaults);
            let found = dirs
                .map(|d| format!("{}/{needed}", d.trim_end_matches('/')))
                .find(|cand| is_compatible(&tree.host_path(cand), class, elf.header.e_machine))
                .ok_or_else(|| {
                    elf_err(format!(
                        "cannot find {needed} (searched runpath {own_dirs:?}, ld.so.conf {conf_dirs:?}, defaults {defaults:?}); install the package providing it"
                    ))
                })?;
            let dir = found.rsplit_once('/').map_or("/", |(d, _)| d).to_string();
            if !defaults.contains(&dir) {
                closure.extra_lib_dirs.insert(dir);
            }
            queue.push_back(found);
        }
    }
    Ok(closure)
}

/// True when `path` is an ELF object of the same class and machine, so an
/// i386 library in a biarch directory is skipped like the loader skips it.
fn is_compatible(path: &Path, class: u8, machine: u16) -> bool {
    let mut head = [0u8; 64];
    let ok = File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    ok && Elf::parse_header(&head)
        .map(|h| h.e_ident[header::EI_CLASS] == class && h.e_machine == machine)
        .unwrap_or(false)
}

/// The host's multiarch triplet (`x86_64-linux-gnu`, `aarch64-linux-gnu`, ...).
pub fn multiarch_triplet() -> String {
    format!("{}-linux-gnu", std::env::consts::ARCH)
}

/// The directories the loader searches when nothing else names the library.
pub fn default_lib_dirs() -> Vec<String> {
    let t = multiarch_triplet();
    vec![
        format!("/lib/{t}"),
        format!("/usr/lib/{t}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
}

/// Directories listed in an ld.so.conf file, following `include` globs
/// (relative patterns are relative to the including file's directory).
/// A missing file yields no directories: the loader works without one.
pub fn ld_so_conf_dirs(conf: &Path) -> Vec<String> {
    let mut dirs = Vec::new();
    read_conf(conf, &mut dirs, 0);
    dirs
}

fn read_conf(conf: &Path, dirs: &mut Vec<String>, depth: usize) {
    // Guards against include cycles (a conf file including itself).
    if depth > 8 {
        return;
    }
    let Ok(text) = fs::read_to_string(conf) else {
        return;
    };
    let base = conf.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pat in pattern.split_whitespace() {
                for file in glob(&base.join(pat)) {
                    read_conf(&file, dirs, depth + 1);
                }
            }
        } else if line.starts_with('/') && !dirs.iter().any(|d| d == line) {
            dirs.push(line.to_string());
        }
    }
}

/// Minimal glob: `*` and `?` within path components, results sorted like glob(3).
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for comp in pattern.components().skip(1) {
        let comp = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for dir in &current {
            if !comp.contains(['*', '?']) {
                let p = dir.join(comp.as_ref());
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for name in rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
            {
                // Like the shell, wildcards do not match hidden files.
                if !name.starts_with('.') && wildcard(comp.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(name));
                }
            }
        }
        next.sort();
        current = next;
    }
    current
}

fn wildcard(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pat[1..], s) || (!s.is_empty() && wildcard(pat, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&pat[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::hostfs::HostNode;

    /// Follows `path` through the tree's symlinks like the kernel would inside
    /// the image; returns the final regular file if it exists in the tree.
    fn resolve_in_tree(tree: &HostTree, path: &str) -> Option<String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        for _ in 0..1000 {
            let Some(c) = todo.pop() else { break };
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            match tree.nodes().get(&format!("/{}", cur.join("/"))) {
                Some(HostNode::Symlink(t)) => {
                    cur.pop();
                    if t.starts_with('/') {
                        cur.clear();
                    }
                    todo.extend(
                        t.split('/')
                            .filter(|c| !c.is_empty() && *c != ".")
                            .rev()
                            .map(String::from),
                    );
                }
                Some(HostNode::File(..)) if todo.is_empty() => {
                    return Some(format!("/{}", cur.join("/")))
                }
                _ => {}
            }
        }
        None
    }

    #[test]
    fn ls_closure_has_libc_and_interpreter_with_links() {
        let mut tree = HostTree::new();
        let closure = add_with_libraries(&mut tree, &["/bin/ls"]).unwrap();
        let ls = fs::read("/bin/ls").unwrap();
        let elf = Elf::parse(&ls).unwrap();
        let interp = elf.interpreter.expect("/bin/ls is dynamically linked");
        for wanted in [interp, "/bin/ls"] {
            let real = resolve_in_tree(&tree, wanted)
                .unwrap_or_else(|| panic!("{wanted} does not resolve in the image"));
            assert_eq!(
                Path::new(&real),
                fs::canonicalize(wanted).unwrap(),
                "{wanted}"
            );
        }
        for lib in &elf.libraries {
            let found = closure
                .objects
                .iter()
                .any(|o| o.ends_with(&format!("/{lib}")))
                || tree.nodes().keys().any(|k| k.ends_with(&format!("/{lib}")));
            assert!(found, "{lib} missing from closure");
        }
        let t = multiarch_triplet();
        let libc = resolve_in_tree(&tree, &format!("/lib/{t}/libc.so.6"))
            .expect("libc.so.6 resolves via /lib");
        assert!(closure.objects.contains(&libc));
        // Each symlink the host has on the way is reproduced verbatim.
        for link in ["/bin", "/lib", "/lib64"] {
            if let Ok(target) = fs::read_link(link) {
                assert_eq!(
                    tree.nodes()[link],
                    HostNode::Symlink(target.to_string_lossy().into_owned()),
                    "{link}"
                );
            }
        }
        // Real files are stored once: no two file nodes share a host inode.
        let files = tree.host_files();
        let uniq: BTreeSet<_> = files.iter().map(|p| fs::canonicalize(p).unwrap()).collect();
        assert_eq!(uniq.len(), files.len());
        assert!(
            closure.extra_lib_dirs.is_empty(),
            "{:?}",
            closure.extra_lib_dirs
        );
    }

    #[test]
    fn ld_so_conf_includes_and_globs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("conf.d");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("b.conf"), "/opt/b # comment\n").unwrap();
        fs::write(d.join("a.conf"), "/opt/a\ninclude ../loop.conf\n").unwrap();
        fs::write(d.join(".hidden.conf"), "/opt/hidden\n").unwrap();
        fs::write(d.join("c.txt"), "/opt/c\n").unwrap();
        fs::write(
            t.path().join("loop.conf"),
            "/opt/loop\ninclude conf.d/a.conf\n",
        )
        .unwrap();
        fs::write(
            t.path().join("ld.so.conf"),
            "include conf.d/*.conf\n/usr/local/lib\nhwcap 0 x\n",
        )
        .unwrap();
        let dirs = ld_so_conf_dirs(&t.path().join("ld.so.conf"));
        assert_eq!(dirs, ["/opt/a", "/opt/loop", "/opt/b", "/usr/local/lib"]);
        assert!(ld_so_conf_dirs(&t.path().join("missing")).is_empty());
        assert!(
            wildcard(b"*.conf", b"x.conf")
                && !wildcard(b"*.conf", b"x.con")
                && wildcard(b"a?c", b"abc")
        );
    }

    #[test]
    fn missing_library_is_a_clear_error() {
        // A fake root holding only the binary: its libraries exist nowhere.
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        fs::copy("/usr/bin/true", t.path().join("usr/bin/true")).unwrap();
        let mut tree = HostTree::with_root(t.path());
        let err = add_with_libraries(&mut tree, &["/usr/bin/true"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot find libc.so.6") && err.contains("install the package"),
            "{err}"
        );
    }
}
