"""Custom field definitions (``/v1/custom-fields``) and the upsert by a unique custom field; enforcing
the definitions on record writes is the resource machinery's (``resources/custom_fields/``)."""
