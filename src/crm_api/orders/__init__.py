"""Orders from ecommerce platforms: an order becomes a contact, a company and a deal with line items."""
