"""After: a RESTful task scheduler daemon with named workers over CouchDB.

Data flow (each arrow is one module boundary)::

    cli.py / api/  ->  service.py  ->  store.py (CouchDB)  <-  scheduler.py (tick)
                                                                   |
                                                  supervisor.py -> worker.py (processes)

``model.py`` and ``timing.py`` hold the pure decisions the rest relies on.
"""

__version__ = "0.1.0"
