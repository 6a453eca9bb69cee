//! OCI hook (createRuntime): injects the host GPUs named by annotation
//! `com.berth.gpus` and the NVIDIA driver into the container.

fn main() {
    berth_hooks::run_main("berth-hook-nvidia", berth_hooks::nvidia::run)
}
