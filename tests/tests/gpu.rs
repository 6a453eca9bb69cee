//! The NVIDIA hook with the fake driver of `berth_tests::fake_gpu`:
//! `berth run --gpus` as root on an image with glibc and ldconfig (what the
//! container sees: device nodes, libraries, the linker cache, `nvidia-smi
//! -L`; and its errors), then per-task GPU binding through Slurm.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_tests::fake_gpu::{self, FakeGpu, DRIVER_VERSION, OLD_VERSION};
use berth_tests::image::catalog::{build_cached, hostbins};
use berth_tests::{e2e, leaks, paths};

/// The test image: busybox plus glibc (for the fake nvidia-smi) and the
/// static ldconfig (for `ldconfig -p`).
fn image_archive() -> PathBuf {
    let recipe = hostbins("gpu", &["/sbin/ldconfig", "/usr/bin/true"]).unwrap();
    let lock = paths::root().join("images.lock");
    std::fs::create_dir_all(paths::root()).unwrap();
    let _held = berth_tests::lock::exclusive(&lock).unwrap();
    build_cached(&paths::images_dir().join("gpu"), &recipe, "gpu")
        .unwrap()
        .oci_archive
}

/// A private store and site config whose hooks dir holds the shipped
/// NVIDIA hook file, pointed at the fake driver.
struct Site {
    dir: tempfile::TempDir,
    image: String,
}

impl Site {
    /// `dev_dir`: the fake device nodes; `env`: extra hook env entries.
    fn new(fake: &FakeGpu, dev_dir: &Path, env: &[(&str, &str)]) -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            image: "berth-test/gpu:latest".into(),
        };
        std::fs::create_dir(site.dir.path().join("hooks.d")).unwrap();
        site.configure(fake, dev_dir, env);
        let archive = image_archive();
        let loaded = site.berth(&[
            "load",
            "-q",
            "--tag",
            &site.image,
            archive.to_str().unwrap(),
        ]);
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        site
    }

    /// (Re)writes the hooks dir and the site config.
    fn configure(&self, fake: &FakeGpu, dev_dir: &Path, env: &[(&str, &str)]) {
        let hooks = self.dir.path().join("hooks.d");
        let shipped = paths::workspace().join("etc/hooks.d/20-nvidia.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shipped).unwrap()).unwrap();
        v["hook"]["path"] = paths::hook_bin("berth-hook-nvidia")
            .display()
            .to_string()
            .into();
        let mut vars: Vec<String> = fake
            .hook_env_for(dev_dir)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        v["hook"]["env"] = vars.into();
        std::fs::write(hooks.join("20-nvidia.json"), v.to_string()).unwrap();
        std::fs::write(
            self.dir.path().join("berth.toml"),
            format!("hooks_dir = {:?}\n", hooks.display().to_string()),
        )
        .unwrap();
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(paths::berth_bin())
            .args(args)
            .env("BERTH_CONFIG", self.dir.path().join("berth.toml"))
            .env("BERTH_STORE", self.dir.path().join("store"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `berth run [--gpus LIST] IMAGE sh -c SCRIPT`.
    fn run(&self, gpus: Option<&str>, script: &str) -> Output {
        let mut args = vec!["run", "-q"];
        if let Some(g) = gpus {
            args.extend(["--gpus", g]);
        }
        args.extend([self.image.as_str(), "/bin/sh", "-c", script]);
        self.berth(&args)
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, gpus: Option<&str>, script: &str) -> String {
        let o = self.run(gpus, script);
        assert!(o.status.success(), "berth run failed: {}", text(&o.stderr));
        text(&o.stdout)
    }

    /// Runs and requires failure; returns stderr.
    fn fails(&self, gpus: &str) -> String {
        let o = self.run(Some(gpus), "true");
        assert!(!o.status.success(), "--gpus {gpus} should fail");
        assert_no_run_mounts(&self.dir.path().join("store"));
        let err = text(&o.stderr);
        assert!(
            err.starts_with("berth: error: ") && err.trim_end().lines().count() == 1,
            "one error line: {err}"
        );
        err
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `berth run` mounts in a private namespace: a leak is an attached loop device.
fn assert_no_run_mounts(store: &std::path::Path) {
    let loops = berth_tests::leaks::loop_devices_under(store);
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
}

/// The lines of section `name` of the output of [`SHOW`].
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("== {name}");
    out.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

/// What the container sees, in sections.
const SHOW: &str = "echo '== dev'; ls /dev | grep nvidia; \
    echo '== lib'; ls /usr/lib/x86_64-linux-gnu | grep -E 'nvidia|cuda'; \
    echo '== links'; cd /usr/lib/x86_64-linux-gnu && for l in libcuda.so.1 libnvidia-nvvm.so.4; do echo $l $(readlink $l); done; \
    echo '== cache'; ldconfig -p | grep -E 'nvidia|cuda' | sed 's/ (.*//; s/^[[:space:]]*//'; \
    echo '== bin'; ls /usr/bin | grep nvidia; \
    echo '== smi'; nvidia-smi -L; echo '== end'";

fn smi_line(index: u32, minor: u32) -> String {
    format!(
        "GPU {index}: Berth Fake GPU (UUID: {})",
        fake_gpu::uuid(minor)
    )
}

#[test]
fn run_with_gpus_injects_exactly_the_allocated_gpus_and_the_driver() {
    let fake = fake_gpu::install().unwrap();
    let site = Site::new(&fake, &fake.dev_dir(), &[]);
    let out = site.ok(Some("2,0"), SHOW);
    assert_eq!(
        section(&out, "dev"),
        [
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia0",
            "nvidia2",
            "nvidiactl"
        ],
        "{out}"
    );
    let v = DRIVER_VERSION;
    let mut want_lib = vec![
        "libcuda.so.1".to_string(),
        format!("libcuda.so.{v}"),
        "libnvidia-cfg.so.1".into(),
        format!("libnvidia-cfg.so.{v}"),
        format!("libnvidia-gpucomp.so.{v}"),
        "libnvidia-ml.so.1".into(),
        format!("libnvidia-ml.so.{v}"),
        "libnvidia-nvvm.so.4".into(),
        format!("libnvidia-nvvm.so.{v}"),
        "libnvidia-ptxjitcompiler.so.1".into(),
        format!("libnvidia-ptxjitcompiler.so.{v}"),
    ];
    want_lib.sort();
    assert_eq!(section(&out, "lib"), want_lib, "{out}");
    assert!(
        !out.contains(OLD_VERSION),
        "the old driver's library stays out"
    );
    assert_eq!(
        section(&out, "links"),
        [
            format!("libcuda.so.1 libcuda.so.{v}"),
            format!("libnvidia-nvvm.so.4 libnvidia-nvvm.so.{v}")
        ]
    );
    let cache = section(&out, "cache");
    for soname in [
        "libcuda.so.1",
        "libnvidia-ml.so.1",
        "libnvidia-nvvm.so.4",
        "libnvidia-ptxjitcompiler.so.1",
        "libnvidia-cfg.so.1",
    ] {
        assert!(cache.contains(&soname), "{soname} in ldconfig -p: {out}");
    }
    assert!(
        cache.contains(&format!("libnvidia-gpucomp.so.{v}").as_str()),
        "{out}"
    );
    assert_eq!(section(&out, "bin"), ["nvidia-debugdump", "nvidia-smi"]);
    assert_eq!(section(&out, "smi"), [smi_line(0, 0), smi_line(1, 2)]);
    assert_no_run_mounts(&site.dir.path().join("store"));

    // Without --gpus the hook is not selected: no GPU, no driver.
    let out = site.ok(None, "ls /dev; ls /usr/bin");
    assert!(!out.contains("nvidia"), "{out}");
}

#[test]
fn indices_are_nvml_indices_and_nodes_follow_minor_numbers() {
    let fake = fake_gpu::install().unwrap();
    // A node whose GPUs have minors 1 and 3: NVML indices 0 and 1.
    let dev = tempfile::tempdir().unwrap();
    fake_gpu::make_dev_dir(dev.path(), &[1, 3]).unwrap();
    let site = Site::new(&fake, dev.path(), &[]);
    let out = site.ok(Some("1"), SHOW);
    let gpus: Vec<&str> = section(&out, "dev")
        .into_iter()
        .filter(|n| n.trim_start_matches("nvidia").parse::<u32>().is_ok())
        .collect();
    assert_eq!(gpus, ["nvidia3"], "{out}");
    assert_eq!(section(&out, "smi"), [smi_line(0, 3)]);
    let out = site.ok(Some("all"), SHOW);
    assert_eq!(section(&out, "smi"), [smi_line(0, 1), smi_line(1, 3)]);
}

#[test]
fn driver_problems_fail_the_run_with_one_clear_line() {
    let fake = fake_gpu::install().unwrap();
    let dev = fake.dev_dir();
    let site = Site::new(&fake, &dev, &[]);
    let err = site.fails("1,4");
    assert!(
        err.contains("berth-hook-nvidia: error: GPU 4 was allocated but NVML reports 4 GPU(s) on this node (valid indices: 0-3)"),
        "{err}"
    );
    let err = site.fails("0,x");
    assert!(err.contains("0,x"), "{err}");

    site.configure(
        &fake,
        &dev,
        &[("NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1")],
    );
    let err = site.fails("0");
    assert!(
        err.contains("cannot load the NVIDIA management library /nonexistent/libnvidia-ml.so.1"),
        "{err}"
    );
    site.configure(&fake, &dev, &[("FAKE_NVML_INIT_ERROR", "9")]);
    let err = site.fails("0");
    assert!(
        err.contains("nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)"),
        "{err}"
    );
    site.configure(&fake, &dev, &[("FAKE_NVML_DRIVER_VERSION", "999.1")]);
    let err = site.fails("0");
    assert!(err.contains("libnvidia-ml.so.999.1 not found in"), "{err}");
}

/// `srun -n2 --gpus-per-task=1` in the container: per task, its rank,
/// `CUDA_VISIBLE_DEVICES` and the GPU nodes it sees, sorted by rank.
fn two_tasks(c: &e2e::Env) -> Vec<String> {
    let script = "echo $SLURM_PROCID $CUDA_VISIBLE_DEVICES $(cd /dev && ls -d nvidia[0-9]*)";
    let o = c.srun(&[
        "-n2",
        "--gpus-per-task=1",
        "--container-image",
        &c.image,
        "sh",
        "-c",
        script,
    ]);
    assert!(o.status.success(), "srun failed: {}", text(&o.stderr));
    let mut lines: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    lines.sort();
    lines
}

/// The job name of the job that holds GPUs 0 and 1.
const HOLDER: &str = "berth-gpu-holder";

/// Starts a job holding two GPUs (a batch job, so no client process of ours
/// lives with it), cancelled on drop even when an assertion fails, so no later
/// test finds GPUs taken.
fn hold_two_gpus(env: &e2e::Env) -> e2e::CancelOnDrop<'_> {
    let out = env
        .as_user(
            "sbatch",
            &[
                "--job-name",
                HOLDER,
                "--gpus=2",
                "--output=/dev/null",
                "--wrap",
                "sleep 600",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    e2e::CancelOnDrop::new(env, HOLDER, None)
}

#[test]
fn each_task_sees_its_own_gpu_in_the_step_container() {
    let c = e2e::env();
    assert_eq!(
        two_tasks(&c),
        ["0 0 nvidia0 nvidia1", "1 1 nvidia0 nvidia1"]
    );
    leaks::assert_clean();

    // Another job holds host GPUs 0 and 1: the step gets 2 and 3, which the
    // container holds as its GPUs 0 and 1.
    let holder = hold_two_gpus(&c);
    assert!(holder.running(), "the holding job started");
    assert_eq!(
        two_tasks(&c),
        ["0 0 nvidia2 nvidia3", "1 1 nvidia2 nvidia3"]
    );
    leaks::assert_clean();
}

#[test]
fn batch_steps_use_the_jobs_gpus_and_an_exported_list_grants_nothing() {
    let c = e2e::env();
    let dir = e2e::user_dir(Path::new("/tmp"));
    let show = "echo $CUDA_VISIBLE_DEVICES $(cd /dev && ls -d nvidia[0-9]* 2>/dev/null)";

    // The batch step of a job holding host GPUs 2 and 3 (another job holds
    // 0 and 1) has only SLURM_JOB_GPUS: its container gets those two.
    let holder = hold_two_gpus(&c);
    assert!(holder.running(), "the holding job started");
    let script = dir.path().join("job.sh");
    let output = dir.path().join("job.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n#SBATCH --gpus=2\n#SBATCH --container-image={}\n#SBATCH --output={}\n{show}\n",
            c.image,
            output.display()
        ),
    )
    .unwrap();
    let o = c
        .as_user("sbatch", &["--wait", script.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "sbatch failed: {}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().trim(),
        "0,1 nvidia2 nvidia3"
    );
    drop(holder);
    leaks::assert_clean();

    // On a node without GPU gres Slurm passes the user's exported
    // CUDA_VISIBLE_DEVICES through; it must not give the container a GPU.
    let Some(multi) = c.stack.cluster.multi_partition() else {
        panic!("the test cluster has a second node");
    };
    let node2 = c.stack.cluster.nodes()[1].clone();
    let mut cmd = c.as_user(
        "srun",
        &[
            "-p",
            multi,
            "-w",
            &node2,
            "--container-image",
            &c.image,
            "sh",
            "-c",
            show,
        ],
    );
    cmd.env("CUDA_VISIBLE_DEVICES", "3");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "srun failed: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "3", "no GPU node injected");
}

/// A named container keeps the GPUs it was made with: a later step of the
/// job that joins it with a GPU the container does not hold fails with one
/// clear line instead of reaching a GPU outside the container's set.
#[test]
fn joining_a_named_container_with_other_gpus_fails_cleanly() {
    let c = e2e::env();
    let dir = e2e::user_dir(Path::new("/tmp"));
    let script = dir.path().join("job.sh");
    let output = dir.path().join("job.out");
    let show = "$CUDA_VISIBLE_DEVICES $(cd /dev && ls -d nvidia[0-9]*)";
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n#SBATCH --gpus=2\n#SBATCH --output={out}\n\
             srun --gpus=1 --container-name=gx --container-image={img} sh -c 'echo first {show}'\n\
             srun --gpus=2 --container-name=gx sh -c 'echo second {show}'\n\
             echo second-rc=$?\n",
            out = output.display(),
            img = c.image,
        ),
    )
    .unwrap();
    let o = c
        .as_user("sbatch", &["--wait", script.to_str().unwrap()])
        .output()
        .unwrap();
    let out = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(
        o.status.success(),
        "sbatch failed: {} {out}",
        text(&o.stderr)
    );
    let first: Vec<&str> = out.lines().filter(|l| l.starts_with("first ")).collect();
    assert_eq!(first.len(), 1, "{out}");
    assert!(
        first[0].starts_with("first 0 nvidia"),
        "one GPU, numbered 0: {out}"
    );
    assert!(
        !out.contains("second 0"),
        "the second step must not run: {out}"
    );
    assert!(
        out.contains("is not one of the step container's GPUs"),
        "one clear error line: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("second-rc=") && l != "second-rc=0"),
        "{out}"
    );
    leaks::assert_clean();
}
