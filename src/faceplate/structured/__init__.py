"""From a request's tools and response_format to prompt messages and a grammar: plan, grammars, schema bounds, tool markup."""
