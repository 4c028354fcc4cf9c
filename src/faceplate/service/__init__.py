"""HTTP-free services: run a chat, completion or embedding request for a principal, metered."""
