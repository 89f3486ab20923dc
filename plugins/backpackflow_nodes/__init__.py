"""backpackflow_nodes: the ``llm``, ``tool`` and ``router`` node types and the built-in
tools, with jinja2-sandboxed templating of params and input bindings."""
