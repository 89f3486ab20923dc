"""The example flows, shipped inside the wheel as the package ``backpackflow_examples``.

Each example is a folder holding a flow file and the files it reads; :mod:`.plugin` registers
them through the ``backpackflow_register_examples`` hook, as any plugin would ship its own.
``backpackflow examples list`` shows them, ``backpackflow examples copy NAME DIR`` copies one
out to run or edit, and ``backpackflow serve`` seeds them into a new database.
"""
