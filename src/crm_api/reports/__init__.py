"""Analytics reports (``/v1/reports/...``): pipeline (also as it stood at a past moment), forecast, win rate
and sales cycle, answered from the deals and their stage history, exactly, in JSON or CSV.

``params.py`` reads the query (periods, time zones, groups), ``sales.py`` holds the SQL, ``build.py``
turns rows into answers, ``render.py`` writes JSON or CSV, ``router.py`` the routes.
"""
