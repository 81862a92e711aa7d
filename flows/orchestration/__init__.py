"""The Prefect plumbing under the flows: the runtime each flow builds, this home's Prefect server, the deployments
of infra/prefect.yaml and the watchdog of a CLI call's processes.

Not called `prefect`: Prefect runs a deployment's entrypoint (flows/ingest.py) with flows/ first on sys.path, where
a folder of that name would stand in for the library."""
