"""Tickets, their comments, SLA policies and the SLA breach job."""
