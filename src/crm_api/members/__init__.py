"""The workspace's people: members, who own records, and teams of them."""
