"""Custom field values on the records that carry them: checked on every write against the workspace's
definitions (``enforce``, ``values``), filtered (``typed``) and sorted (``sorting``). The definitions are a
resource of their own, in ``crm_api.custom_fields``."""
