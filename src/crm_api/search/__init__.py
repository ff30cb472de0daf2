"""``GET /v1/search``: ranked hits across contacts, companies, deals and tickets."""
