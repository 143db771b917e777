/*
 * The protocol helper interface, in the spirit of the kernel's conntrack
 * helpers and libalias modules: a cheap match (does this packet concern
 * me?), a handler (parse, decide, edit), and calls into the NAT core for
 * mappings, pinholes and payload replacement.  The core knows helpers
 * only through this table; src/alg.c lists them.
 */

#ifndef ALG_H
#define ALG_H

#include "sipnat.h"

enum alg_verdict {
	ALG_PASS,		/* send it on, edited or not */
	ALG_DROP,		/* drop it (the helper counted why) */
};

/* One packet as a helper sees it, before the core translates it. */
struct alg_pkt {
	struct pkt		*p;
	enum nat_dir		 dir;
	struct nat_session	*s;	/* the packet's session: s->map */
	uint32_t		 pub;	/* the public address */
};

/* A control command a helper adds to sipnatctl. */
struct alg_cmd {
	const char	*name;
	const char	*usage;
	void		(*exec)(int, char **, bool, struct evbuffer *);
};

/*
 * A helper's statistic, by name: a counter (only ever grows), or a gauge
 * (a level, such as open dialogs), which the metrics type apart.
 */
typedef void	(*alg_stat_cb)(const char *, uint64_t, bool, void *);

struct alg {
	const char	*name;
	/* Cheap: ports only.  Called for every packet of its protocol. */
	bool		(*match)(const struct pkt *, enum nat_dir);
	/* Parse, decide, edit with nat_payload_replace(). */
	enum alg_verdict (*handle)(struct alg_pkt *);
	/*
	 * TCP, optional: the bytes of a stream from a message boundary on.
	 * Returns how many of them make whole messages, writing what is to
	 * go in their place to out (*outlen: its size, then its length; 0
	 * drops them); 0 if it needs more bytes; -1 if it cannot read them
	 * (the connection is then passed on unparsed).
	 */
	ssize_t		(*stream)(struct alg_pkt *, const uint8_t *, size_t,
			    uint8_t *, size_t *);
	/* Take a (re)loaded configuration; -1 with a cause refuses it. */
	int		(*configure)(const struct config *, char **);
	/* Once a second. */
	void		(*tick)(uint64_t);
	/* Optional: an inbound packet to a public port with no mapping. */
	void		(*stray)(const struct pkt *);
	/*
	 * Optional: a capture filter for "capture start FILE MODE [ARG]":
	 * 0 with the filter and its argument (freed with *arg_free), or -1
	 * if MODE is not the helper's.
	 */
	int		(*capture)(const char *, const char *, capture_filter_cb *,
			    void **, void (**)(void *));
	/* Free everything at exit. */
	void		(*shutdown)(void);
	/* Optional: labelled series for the metrics endpoint. */
	void		(*metrics)(struct evbuffer *);
	/* Counters and gauges, for sipnatctl stats and the metrics. */
	void		(*stats)(alg_stat_cb, void *);
	const struct alg_cmd *cmds;	/* ends with a NULL name */
};

/* alg.c */
const struct alg *alg_find(const struct pkt *, enum nat_dir);
int		 alg_configure(const struct config *, char **);
void		 alg_tick(uint64_t);
void		 alg_stray(const struct pkt *);
void		 alg_metrics(struct evbuffer *);
int		 alg_capture(const char *, const char *, capture_filter_cb *,
		     void **, void (**)(void *));
void		 alg_shutdown(void);
void		 alg_stats(alg_stat_cb, void *);
const struct alg_cmd *alg_cmd_find(const char *);
void		 alg_cmd_foreach(void (*)(const struct alg_cmd *, void *),
		     void *);

/* nat.c: what the core offers helpers */
int		 nat_payload_replace(struct alg_pkt *, const uint8_t *, size_t);
uint8_t		*nat_payload(const struct alg_pkt *, size_t *);

/* stream.c: TCP streams for helpers that have a stream() */
/* How stream.c sends the segments it makes. */
struct stream_io {
	uint32_t	 pub;
	/* The MTU toward the receiver of a direction. */
	unsigned	(*mtu)(enum nat_dir);
	/* A segment from the sender's side: translate it and send it on. */
	void		(*to_receiver)(struct pkt *, struct nat_session *,
			    enum nat_dir);
	/* A segment addressed to the sender of a direction (our ACKs). */
	void		(*to_sender)(struct pkt *, enum nat_dir);
};

void		 stream_configure(size_t, size_t, const struct stream_io *);
bool		 stream_segment(struct alg_pkt *, const struct alg *);
void		 stream_tick(uint64_t);
void		 stream_stats(alg_stat_cb, void *);

/* alg-sip.c */
extern const struct alg alg_sip;

#endif /* ALG_H */
