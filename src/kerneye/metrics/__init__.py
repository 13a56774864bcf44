"""Prometheus metrics: label vocabularies (labels.py), collectors that read
the live agent at scrape time (collector.py), and the HTTP endpoint
(server.py). Nothing here is global: each Agent owns its registry."""
