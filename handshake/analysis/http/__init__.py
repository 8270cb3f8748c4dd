"""HTTP over the decrypted (or clear) streams: HTTP/1.x, HTTP/2 and HTTP/3 framing, as far as a count needs it."""
