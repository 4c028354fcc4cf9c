"""Wire <-> engine: OpenAI requests into engine requests (inbound), engine events into OpenAI objects."""
