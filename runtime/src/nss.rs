//! Name service use of a static build.
//!
//! The shipped `berth` is linked statically (it is exec'd three times per
//! container lifecycle, and a static binary starts ~0.4 ms faster), against
//! musl where the build host has it and glibc otherwise (scripts/build-release).
//! musl has no NSS: its resolver reads `/etc/hosts` and `/etc/resolv.conf`. A
//! static glibc has the `files` and `dns` sources built in but would `dlopen`
//! any other module named in `/etc/nsswitch.conf`, which only works with the
//! very glibc it was built against. So berth never looks up users or groups (the
//! SPANK plugin passes the job user's names, `berth ssh-keygen` reads
//! `$HOME`), and a static build resolves host names with `/etc/hosts` and
//! DNS only, whatever nsswitch.conf lists.

/// Restricts host lookups to glibc's built-in `files` and `dns` sources in a
/// static glibc build; does nothing in a dynamic one, which follows
/// nsswitch.conf, nor with musl, which has no other sources. Call before the first host name lookup.
pub fn builtin_sources_only() {
    #[cfg(all(target_feature = "crt-static", target_env = "gnu"))]
    {
        extern "C" {
            // glibc's documented override of nsswitch.conf for one database.
            fn __nss_configure_lookup(
                db: *const libc::c_char,
                service_line: *const libc::c_char,
            ) -> libc::c_int;
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: two NUL-terminated static strings; called once, before
        // any lookup.
        ONCE.call_once(|| unsafe {
            __nss_configure_lookup(c"hosts".as_ptr(), c"files dns".as_ptr());
        });
    }
}
