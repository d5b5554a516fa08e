/*
 * The baseline for scripts/bench-mqtt: a receiver and a publisher written directly on
 * libmosquitto, the way a C program would use it, to put the Swift client's figures next to.
 *
 *   mqtt_baseline receive HOST PORT TOPIC COUNT   prints "ready", then one result line
 *   mqtt_baseline publish HOST PORT TOPIC COUNT SIZE
 *
 * Result lines: "received=N seconds=S rate=R" / "published=N seconds=S rate=R".
 * A receiver stops at COUNT messages or after 2 s without one.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct receiver {
    long wanted, received;
    double first, last;
    int subscribed;
};

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m; (void)msg;
    struct receiver *r = obj;
    double t = now();
    if (r->received == 0) r->first = t;
    r->last = t;
    r->received++;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted) {
    (void)m; (void)mid; (void)n; (void)granted;
    ((struct receiver *)obj)->subscribed = 1;
}

static int acked;
static int marker_mid = -1;
static void on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)m; (void)obj;
    if (mid == marker_mid) acked = 1;
}

static struct mosquitto *connect_client(const char *host, int port, void *obj) {
    struct mosquitto *m = mosquitto_new(NULL, true, obj);
    if (!m) { perror("mosquitto_new"); exit(1); }
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (mosquitto_connect(m, host, port, 30) != MOSQ_ERR_SUCCESS) { fprintf(stderr, "connect failed\n"); exit(1); }
    return m;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: see the comment at the top\n"); return 2; }
    const char *mode = argv[1], *host = argv[2], *topic = argv[4];
    int port = atoi(argv[3]);
    long count = atol(argv[5]);
    mosquitto_lib_init();

    if (strcmp(mode, "receive") == 0) {
        struct receiver r = { .wanted = count };
        struct mosquitto *m = connect_client(host, port, &r);
        mosquitto_message_callback_set(m, on_message);
        mosquitto_subscribe_callback_set(m, on_subscribe);
        mosquitto_subscribe(m, NULL, topic, 0);
        while (!r.subscribed) mosquitto_loop(m, 100, 1);
        printf("ready\n");
        fflush(stdout);
        double idle_since = now();
        long seen = 0;
        while (r.received < r.wanted) {
            if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS) break;
            if (r.received != seen) { seen = r.received; idle_since = now(); }
            else if (now() - idle_since > 2.0) break;
        }
        double seconds = r.received > 1 ? r.last - r.first : 0;
        printf("received=%ld seconds=%.4f rate=%.0f\n", r.received, seconds, seconds > 0 ? (r.received - 1) / seconds : 0);
        mosquitto_disconnect(m);
        mosquitto_destroy(m);
    } else if (strcmp(mode, "publish") == 0 && argc >= 7) {
        int size = atoi(argv[6]);
        char *payload = malloc(size);
        memset(payload, 'x', size);
        struct mosquitto *m = connect_client(host, port, NULL);
        mosquitto_publish_callback_set(m, on_publish);
        mosquitto_loop_start(m);
        double start = now();
        for (long i = 0; i < count; i++) mosquitto_publish(m, NULL, topic, size, payload, 0, false);
        /* A QoS 1 marker after the stream: its PUBACK means everything before it was sent. */
        mosquitto_publish(m, &marker_mid, "bench/marker", 1, "m", 1, false);
        while (!acked) { struct timespec ts = {0, 1000000}; nanosleep(&ts, NULL); }
        double seconds = now() - start;
        printf("published=%ld seconds=%.4f rate=%.0f\n", count, seconds, count / seconds);
        mosquitto_disconnect(m);
        mosquitto_loop_stop(m, false);
        mosquitto_destroy(m);
        free(payload);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    mosquitto_lib_cleanup();
    return 0;
}
