/* A fake nvidia-smi: loads NVML by soname through the dynamic loader (so it
 * finds the library the way CUDA programs do, through the linker cache) and
 * prints `nvidia-smi -L`'s lines: `GPU i: NAME (UUID: GPU-...)`. Without -L
 * it prints the driver version first. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef int (*init_t)(void);
typedef const char *(*err_t)(int);
typedef int (*str_t)(char *, unsigned int);
typedef int (*count_t)(unsigned int *);
typedef int (*handle_t)(unsigned int, void **);
typedef int (*dev_str_t)(void *, char *, unsigned int);

static void *lib;

static void *sym(const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "nvidia-smi: %s\n", dlerror());
        return NULL;
    }
    return p;
}

int main(int argc, char **argv) {
    int list = argc > 1 && strcmp(argv[1], "-L") == 0;
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!lib) {
        printf("NVIDIA-SMI couldn't find libnvidia-ml.so library in your system.\n");
        fprintf(stderr, "nvidia-smi: %s\n", dlerror());
        return 12;
    }
    init_t init = (init_t)sym("nvmlInit_v2");
    err_t err = (err_t)sym("nvmlErrorString");
    str_t version = (str_t)sym("nvmlSystemGetDriverVersion");
    count_t count = (count_t)sym("nvmlDeviceGetCount_v2");
    handle_t handle = (handle_t)sym("nvmlDeviceGetHandleByIndex_v2");
    dev_str_t name = (dev_str_t)sym("nvmlDeviceGetName");
    dev_str_t uuid = (dev_str_t)sym("nvmlDeviceGetUUID");
    if (!init || !err || !version || !count || !handle || !name || !uuid)
        return 9;
    int rc = init();
    if (rc) {
        printf("NVIDIA-SMI has failed: %s\n", err(rc));
        return 9;
    }
    char buf[96], id[96];
    unsigned int n = 0;
    if (!list && version(buf, sizeof buf) == 0)
        printf("Driver Version: %s\n", buf);
    if ((rc = count(&n))) {
        printf("Failed to count GPUs: %s\n", err(rc));
        return 9;
    }
    if (n == 0) {
        printf("No devices were found\n");
        return 6;
    }
    for (unsigned int i = 0; i < n; i++) {
        void *dev;
        if (handle(i, &dev) || name(dev, buf, sizeof buf) || uuid(dev, id, sizeof id)) {
            printf("Unable to query GPU %u\n", i);
            return 15;
        }
        printf("GPU %u: %s (UUID: %s)\n", i, buf, id);
    }
    return 0;
}
