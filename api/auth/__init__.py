"""Who is calling: API keys, OIDC bearer tokens, signed result links, and what each may do.

Knows nothing of HTTP requests: :mod:`api.http.auth` reads the headers and asks here.
"""
