#ifndef MODELFLEET_CMOSQUITTO_SHIM_H
#define MODELFLEET_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <sys/prctl.h>

/// `FIONREAD` is a macro Swift cannot import; this reads how many bytes wait on a socket.
static inline int cmosquitto_bytes_available(int fd) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) return -1;
    return n;
}

/// `errno` is thread-local storage behind a macro; read it through a function.
static inline int cmosquitto_errno(void) { return errno; }

/// Names the calling thread; the kernel keeps the first 15 bytes (`pthread_setname_np` refuses a
/// longer name instead, and Swift's Glibc module does not declare it).
static inline void cmosquitto_name_thread(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }
#endif
