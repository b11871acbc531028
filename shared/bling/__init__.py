"""Everything that talks to Bling: the HTTP client, the OAuth token store and the account-wide rate budget."""
