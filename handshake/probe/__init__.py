"""``handshake probe URL``: what a real server supports, and what each variant costs against it.

The project's own client endpoints over real sockets, against the one server the user names:
``target`` (the URL, its address), ``connect`` (one connection and what its client saw),
``attempt`` (a variant: warm-up, measured connection, what the server refused), ``capture``
(the probe's own packets, AF_PACKET), ``measure`` (counted from the packets, or inferred),
``summary`` (the verdict), ``run`` (all of it), ``command`` (the CLI's flags).
"""
