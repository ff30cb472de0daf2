"""The machinery every CRM resource shares: its description (spec), SQL, rules and routes."""
