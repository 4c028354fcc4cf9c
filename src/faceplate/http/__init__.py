"""The HTTP edge: the auth gate, body reading, SSE responses that own their cleanup, middleware."""
