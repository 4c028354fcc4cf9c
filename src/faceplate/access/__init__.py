"""Who may call, how much, and what they used: API keys, rate limits, usage records."""
