#ifndef MODELFLEET_CMOSQUITTO_SHIM_H
#define MODELFLEET_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/ioctl.h>
#include <errno.h>

/// `FIONREAD` is a macro Swift cannot import; this reads how many bytes wait on a socket.
static inline int cmosquitto_bytes_available(int fd) {
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0) return -1;
    return n;
}

/// `errno` is thread-local storage behind a macro; read it through a function.
static inline int cmosquitto_errno(void) { return errno; }
#endif
