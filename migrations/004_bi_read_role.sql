-- Read-only role for BI tools (Looker Studio, Power BI, Metabase). Analysts never get the ETL user.
--
-- Created here with SQL, not as a Cloud SQL user: users created through the Cloud SQL API (gcloud, Terraform) are
-- members of cloudsqlsuperuser with CREATEROLE, and on PostgreSQL 15 CREATEROLE may grant itself any other role,
-- bling_etl included. This role has none of that. It is created without LOGIN; infra/bi_role.py (Cloud Build's
-- migrations step, right after this) gives it LOGIN and the password from the bling-bi-password secret.
--
-- Cloud SQL's bling_etl may create roles. A migrating user that may not (the local stack's plain owner) skips the
-- role: nothing reads it there, and in production infra/bi_role.py stops the build if the role is missing.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bling_bi') THEN
    IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
      RAISE NOTICE 'role bling_bi not created: % may not create roles', current_user;
      RETURN;
    END IF;
    CREATE ROLE bling_bi NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3;
    -- A dashboard's runaway query must not hold the small instance: read-only transactions, 5 minutes at most.
    ALTER ROLE bling_bi SET default_transaction_read_only = on;
    ALTER ROLE bling_bi SET statement_timeout = '5min';
  END IF;

  EXECUTE format('GRANT CONNECT ON DATABASE %I TO bling_bi', current_database());
  GRANT USAGE ON SCHEMA public TO bling_bi;
  GRANT SELECT ON ALL TABLES IN SCHEMA public TO bling_bi;
  -- Tables and views that later migrations create (they run as the same user as this one).
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO bling_bi;
END
$$;
