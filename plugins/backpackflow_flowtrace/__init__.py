"""Loading FlowTrace workflow documents (``"version": "1"``) through a config migration."""
