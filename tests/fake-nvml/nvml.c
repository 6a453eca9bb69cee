/* A fake NVIDIA management library (libnvidia-ml.so.1) for machines without
 * a GPU: the subset of NVML that berth's NVIDIA hook and the fake nvidia-smi
 * call, with the real signatures and return codes of nvml.h.
 *
 * The GPUs are the character devices with the driver's major number (195)
 * named nvidiaN in $FAKE_NVML_DEV_DIR (default /dev), in minor order: so on
 * the host it reports the test kit's fake devices and inside a container
 * exactly the nodes the hook injected. GPU i has the UUID
 * GPU-fa4e0000-0000-4000-8000-<minor as 12 hex digits>.
 *
 * $FAKE_NVML_DRIVER_VERSION overrides the driver version (default
 * FAKE_DRIVER_VERSION, set at build time); $FAKE_NVML_INIT_ERROR=<code> makes
 * nvmlInit_v2 fail with that nvmlReturn_t. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#ifndef FAKE_DRIVER_VERSION
#error "build with -DFAKE_DRIVER_VERSION=\"x.y.z\""
#endif

#define NVIDIA_MAJOR 195
#define MAX_GPUS 64

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_UNKNOWN = 999,
};

struct fake_gpu {
    unsigned int minor;
};
typedef struct fake_gpu *nvmlDevice_t;

static struct fake_gpu gpus[MAX_GPUS];
static unsigned int gpu_count;
static int initialised;

static int by_minor(const void *a, const void *b) {
    const struct fake_gpu *x = a, *y = b;
    return (x->minor > y->minor) - (x->minor < y->minor);
}

static void scan(void) {
    const char *dir = getenv("FAKE_NVML_DEV_DIR");
    if (!dir || !*dir)
        dir = "/dev";
    gpu_count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && gpu_count < MAX_GPUS) {
        unsigned int n;
        char tail;
        if (sscanf(e->d_name, "nvidia%u%c", &n, &tail) != 1)
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != NVIDIA_MAJOR)
            continue;
        gpus[gpu_count++].minor = minor(st.st_rdev);
    }
    closedir(d);
    qsort(gpus, gpu_count, sizeof gpus[0], by_minor);
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlInit_v2(void) {
    const char *fail = getenv("FAKE_NVML_INIT_ERROR");
    if (fail && *fail)
        return atoi(fail);
    scan();
    initialised = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    initialised = 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t copy(char *dst, unsigned int len, const char *src) {
    if (!dst)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    const char *v = getenv("FAKE_NVML_DRIVER_VERSION");
    return copy(version, length, v && *v ? v : FAKE_DRIVER_VERSION);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialised)
        return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= gpu_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minor_number) {
    if (!device || !minor_number)
        return NVML_ERROR_INVALID_ARGUMENT;
    *minor_number = device->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    char text[64];
    snprintf(text, sizeof text, "GPU-fa4e0000-0000-4000-8000-%012x", device->minor);
    return copy(uuid, length, text);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    return copy(name, length, "Berth Fake GPU");
}
