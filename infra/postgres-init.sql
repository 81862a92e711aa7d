-- The stack's three databases, made once: PostgreSQL's image runs the files of /docker-entrypoint-initdb.d when it
-- starts on an empty data volume, as POSTGRES_USER, who then owns them. Each has one setting that points to it.
CREATE DATABASE prefect;     -- the Prefect server: PREFECT_API_DATABASE_CONNECTION_URL (postgresql+asyncpg://)
CREATE DATABASE mlflow;      -- MLflow's tracking and registry store: MLFLOW_BACKEND_STORE_URI (postgresql+psycopg://)
CREATE DATABASE aduana_ops;  -- the operational store, the decision log the API writes: ADUANA_OPS_URL (postgresql://)
