/* SPDX-License-Identifier: ISC */

#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alg.h"

/*
 * The Prometheus text endpoint ([metrics] listen, off by default): GET
 * /metrics answers with every counter and gauge sipnatctl stats shows,
 * drops as one family labelled by reason, and what helpers add (calls'
 * media quality).  It runs in the event loop like the control socket.
 */

static struct evhttp	*metrics_http;

/* "drop.fragment_bad" -> "sipnat_drop_fragment_bad" into buf. */
static const char *
metrics_name(const char *name, char *buf, size_t len)
{
	size_t	i, n;

	n = (size_t)snprintf(buf, len, "sipnat_%s", name);
	for (i = 0; i < n && i < len; i++)
		if (buf[i] == '.' || buf[i] == '-')
			buf[i] = '_';
	return (buf);
}

/* One sample with its TYPE line. */
static void
metrics_sample(struct evbuffer *out, const char *name, const char *type,
    uint64_t value)
{
	char	m[128];

	metrics_name(name, m, sizeof m);
	evbuffer_add_printf(out, "# TYPE %s%s %s\n%s%s %" PRIu64 "\n", m,
	    strcmp(type, "counter") == 0 ? "_total" : "", type, m,
	    strcmp(type, "counter") == 0 ? "_total" : "", value);
}

/* A helper's counter or gauge. */
static void
metrics_alg_cb(const char *name, uint64_t value, bool gauge, void *arg)
{
	metrics_sample(arg, name, gauge ? "gauge" : "counter", value);
}

/* Render everything into out. */
static void
metrics_render(struct evbuffer *out)
{
	int	s;
	bool	drops = false;

	for (s = 0; s < STAT_MAX; s++) {
		if (strncmp(stat_name(s), "drop.", 5) == 0) {
			if (!drops)
				evbuffer_add_printf(out, "# TYPE "
				    "sipnat_drops_total counter\n");
			drops = true;
			evbuffer_add_printf(out, "sipnat_drops_total"
			    "{reason=\"%s\"} %" PRIu64 "\n", stat_name(s) + 5,
			    stats[s]);
			continue;
		}
		metrics_sample(out, stat_name(s), "counter", stats[s]);
	}
	metrics_sample(out, "sessions", "gauge", nat_session_count());
	metrics_sample(out, "mappings", "gauge", nat_mapping_count());
	metrics_sample(out, "pinholes", "gauge", nat_pinhole_count());
	metrics_sample(out, "fragments.pending", "gauge", frag_pending());
	alg_stats(metrics_alg_cb, out);
	alg_metrics(out);
}

/* GET /metrics. */
static void
metrics_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer	*out;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, HTTP_BADMETHOD, NULL);
		return;
	}
	if ((out = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	metrics_render(out);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

/* Anything else: 404. */
static void
metrics_other_cb(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

/* Listen on "addr:port" ("" does nothing).  -1 with a cause. */
int
metrics_init(struct event_base *base, const char *listen, char **cause)
{
	char		 addr[INET_ADDRSTRLEN];
	uint32_t	 a;
	uint16_t	 port;

	if (listen[0] == '\0')
		return (0);
	if (config_listen(listen, &a, &port) == -1 ||
	    inet_ntop(AF_INET, &a, addr, sizeof addr) == NULL) {
		if (asprintf(cause, "metrics: bad address %s", listen) == -1)
			*cause = NULL;
		return (-1);
	}
	if ((metrics_http = evhttp_new(base)) == NULL ||
	    evhttp_bind_socket(metrics_http, addr, port) == -1) {
		if (asprintf(cause, "metrics: cannot listen on %s", listen) ==
		    -1)
			*cause = NULL;
		if (metrics_http != NULL)
			evhttp_free(metrics_http);
		metrics_http = NULL;
		return (-1);
	}
	evhttp_set_allowed_methods(metrics_http, EVHTTP_REQ_GET);
	evhttp_set_timeout(metrics_http, 10);
	evhttp_set_max_headers_size(metrics_http, 8192);
	evhttp_set_max_body_size(metrics_http, 0);
	evhttp_set_cb(metrics_http, "/metrics", metrics_cb, NULL);
	evhttp_set_gencb(metrics_http, metrics_other_cb, NULL);
	log_info("metrics on http://%s/metrics", listen);
	return (0);
}

/* Stop listening (at exit). */
void
metrics_cleanup(void)
{
	if (metrics_http != NULL)
		evhttp_free(metrics_http);
	metrics_http = NULL;
}
