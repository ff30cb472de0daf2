"""``GET /v1/<contacts|companies|deals>/{id}/timeline``: one newest-first stream of what touched an object."""
