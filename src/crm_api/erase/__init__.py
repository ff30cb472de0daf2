"""GDPR erase of a contact: personal data out of every table that holds it, one transaction."""
