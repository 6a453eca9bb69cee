/* A stand-in for one NVIDIA driver library: a real ELF shared object with
 * the soname the kit gives it (-Wl,-soname) and one function named after it,
 * so tests can check it is the library the loader resolves. */
#ifndef STUB_NAME
#error "build with -DSTUB_NAME=name"
#endif
#define CAT(a, b) a##b
#define FN(n) CAT(berth_fake_, n)
int FN(STUB_NAME)(void) { return 1; }
