"""Versioned schema migrations, per component, applied in order at start.

The core's migrations are listed here; adapters may contribute their own list (component name =
adapter name) so that each channel owns its tables. Every migration is written for both
databases: SQLite (TEXT timestamps and JSON, INTEGER PRIMARY KEY) and PostgreSQL (`timestamptz`,
`jsonb`, `bigint` identities, `bytea`, tracking serials from a sequence). Applied versions are
recorded in `schema_migrations`; a migration never changes once released — add a new one.
"""

from __future__ import annotations

from gateway.store.migration import Migration

CORE: list[Migration] = [
    Migration(
        1,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- AUTOINCREMENT: SQLite never hands out a rowid twice, even after deletes, so a
        -- tracking number is never reused.
        CREATE TABLE tracking_serial (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL);

        CREATE TABLE contacts (
            id INTEGER PRIMARY KEY,
            name TEXT, email TEXT, phone TEXT, telegram_chat_id TEXT, visitor_id TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX contacts_email ON contacts(email) WHERE email IS NOT NULL;
        CREATE INDEX contacts_phone ON contacts(phone) WHERE phone IS NOT NULL;
        CREATE INDEX contacts_telegram ON contacts(telegram_chat_id)
            WHERE telegram_chat_id IS NOT NULL;
        CREATE INDEX contacts_visitor ON contacts(visitor_id) WHERE visitor_id IS NOT NULL;

        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            tracking TEXT NOT NULL UNIQUE,
            channel TEXT NOT NULL,
            country TEXT NOT NULL,
            line TEXT NOT NULL,
            level TEXT NOT NULL DEFAULT 'L1',
            team TEXT,
            severity TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',
            after_hours INTEGER NOT NULL DEFAULT 0,
            opens_at TEXT,
            subject TEXT,
            description TEXT NOT NULL DEFAULT '',
            contact_id INTEGER NOT NULL REFERENCES contacts(id),
            conversation_key TEXT,
            language TEXT NOT NULL DEFAULT 'es',
            occurred_at TEXT NOT NULL,
            registered_at TEXT NOT NULL,
            registered_by TEXT NOT NULL,
            attention_due TEXT NOT NULL,
            solution_due TEXT NOT NULL,
            attended_at TEXT,
            resolved_at TEXT,
            closed_at TEXT,
            attention_breached INTEGER NOT NULL DEFAULT 0,
            solution_breached INTEGER NOT NULL DEFAULT 0,
            urgent_due TEXT,
            pauses TEXT NOT NULL DEFAULT '[]',
            claimed_by TEXT,
            category TEXT,
            resolution TEXT,
            routing TEXT NOT NULL DEFAULT '{}',
            flags TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        );
        -- The queue query writes this condition literally so SQLite uses the partial index.
        CREATE INDEX incidents_queue ON incidents(level, urgent_due)
            WHERE status IN ('new', 'in_progress', 'waiting_customer');
        CREATE INDEX incidents_conversation ON incidents(conversation_key)
            WHERE status IN ('new', 'in_progress', 'waiting_customer');
        CREATE INDEX incidents_registered ON incidents(registered_at);

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id),
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out', 'note')),
            channel TEXT NOT NULL,
            author TEXT NOT NULL,
            sender TEXT,
            body TEXT NOT NULL,
            html TEXT,
            at TEXT NOT NULL,
            external_ref TEXT,
            delivery_status TEXT,
            delivery_error TEXT,
            flags TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX messages_incident ON messages(incident_id, at);
        CREATE INDEX messages_ref ON messages(external_ref) WHERE external_ref IS NOT NULL;

        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            token TEXT NOT NULL UNIQUE,
            filename TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            inline INTEGER NOT NULL DEFAULT 0,
            url TEXT,
            state TEXT NOT NULL DEFAULT 'stored',
            data BLOB
        );
        CREATE INDEX attachments_message ON attachments(message_id);

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id),
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_incident ON events(incident_id, id);

        CREATE TABLE receipts (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents(id),
            message_id INTEGER REFERENCES messages(id),
            state TEXT NOT NULL DEFAULT 'done',
            error TEXT,
            raw BLOB,
            UNIQUE (channel, provider_id)
        );
        CREATE INDEX receipts_state ON receipts(state) WHERE state <> 'done';

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            recipient TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents(id),
            message_id INTEGER REFERENCES messages(id),
            payload TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'dead', 'held')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_until TEXT,
            last_error TEXT,
            provider_id TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        );
        CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
        CREATE INDEX outbox_recipient ON outbox(channel, kind, recipient, created_at);

        CREATE TABLE outbox_attempts (
            id INTEGER PRIMARY KEY,
            outbox_id INTEGER NOT NULL REFERENCES outbox(id),
            at TEXT NOT NULL,
            ok INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX outbox_attempts_row ON outbox_attempts(outbox_id);

        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('l1', 'l2', 'l3', 'supervisor', 'admin')),
            team TEXT,
            password_hash TEXT,
            session_epoch INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );

        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT
        );

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            run_at TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            UNIQUE (kind, key)
        );
        CREATE INDEX jobs_due ON jobs(run_at) WHERE state = 'pending';
        """,
        """
        CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

        -- Tracking serials: a sequence is never rolled back, so a number handed out to a
        -- transaction that failed is a gap, never reused, across every instance (D4).
        CREATE SEQUENCE tracking_serial AS bigint;

        CREATE TABLE contacts (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name text, email text, phone text, telegram_chat_id text, visitor_id text,
            created_at timestamptz NOT NULL
        );
        CREATE INDEX contacts_email ON contacts(email) WHERE email IS NOT NULL;
        CREATE INDEX contacts_phone ON contacts(phone) WHERE phone IS NOT NULL;
        CREATE INDEX contacts_telegram ON contacts(telegram_chat_id)
            WHERE telegram_chat_id IS NOT NULL;
        CREATE INDEX contacts_visitor ON contacts(visitor_id) WHERE visitor_id IS NOT NULL;

        CREATE TABLE incidents (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            tracking text NOT NULL UNIQUE,
            channel text NOT NULL,
            country text NOT NULL,
            line text NOT NULL,
            level text NOT NULL DEFAULT 'L1',
            team text,
            severity text NOT NULL,
            status text NOT NULL DEFAULT 'new',
            after_hours integer NOT NULL DEFAULT 0,
            opens_at timestamptz,
            subject text,
            description text NOT NULL DEFAULT '',
            contact_id bigint NOT NULL REFERENCES contacts(id),
            conversation_key text,
            language text NOT NULL DEFAULT 'es',
            occurred_at timestamptz NOT NULL,
            registered_at timestamptz NOT NULL,
            registered_by text NOT NULL,
            attention_due timestamptz NOT NULL,
            solution_due timestamptz NOT NULL,
            attended_at timestamptz,
            resolved_at timestamptz,
            closed_at timestamptz,
            attention_breached integer NOT NULL DEFAULT 0,
            solution_breached integer NOT NULL DEFAULT 0,
            urgent_due timestamptz,
            pauses jsonb NOT NULL DEFAULT '[]',
            claimed_by text,
            category text,
            resolution text,
            routing jsonb NOT NULL DEFAULT '{}',
            flags jsonb NOT NULL DEFAULT '[]',
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX incidents_queue ON incidents(level, urgent_due)
            WHERE status IN ('new', 'in_progress', 'waiting_customer');
        CREATE INDEX incidents_conversation ON incidents(conversation_key)
            WHERE status IN ('new', 'in_progress', 'waiting_customer');
        CREATE INDEX incidents_registered ON incidents(registered_at);
        CREATE INDEX incidents_contact ON incidents(contact_id);

        CREATE TABLE messages (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            incident_id bigint NOT NULL REFERENCES incidents(id),
            direction text NOT NULL CHECK (direction IN ('in', 'out', 'note')),
            channel text NOT NULL,
            author text NOT NULL,
            sender text,
            body text NOT NULL,
            html text,
            at timestamptz NOT NULL,
            external_ref text,
            delivery_status text,
            delivery_error text,
            flags jsonb NOT NULL DEFAULT '[]'
        );
        CREATE INDEX messages_incident ON messages(incident_id, at);
        CREATE INDEX messages_ref ON messages(external_ref) WHERE external_ref IS NOT NULL;

        CREATE TABLE attachments (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            message_id bigint NOT NULL REFERENCES messages(id),
            token text NOT NULL UNIQUE,
            filename text NOT NULL,
            content_type text NOT NULL,
            size bigint NOT NULL,
            inline integer NOT NULL DEFAULT 0,
            url text,
            state text NOT NULL DEFAULT 'stored',
            data bytea
        );
        CREATE INDEX attachments_message ON attachments(message_id);

        CREATE TABLE events (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            incident_id bigint NOT NULL REFERENCES incidents(id),
            at timestamptz NOT NULL,
            actor text NOT NULL,
            kind text NOT NULL,
            detail jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_incident ON events(incident_id, id);

        CREATE TABLE receipts (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            channel text NOT NULL,
            provider_id text NOT NULL,
            received_at timestamptz NOT NULL,
            incident_id bigint REFERENCES incidents(id),
            message_id bigint REFERENCES messages(id),
            state text NOT NULL DEFAULT 'done',
            error text,
            raw bytea,
            UNIQUE (channel, provider_id)
        );
        CREATE INDEX receipts_state ON receipts(state) WHERE state <> 'done';

        CREATE TABLE outbox (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            channel text NOT NULL,
            kind text NOT NULL,
            recipient text NOT NULL,
            incident_id bigint REFERENCES incidents(id),
            message_id bigint REFERENCES messages(id),
            payload jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'dead', 'held')),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL,
            lease_until timestamptz,
            last_error text,
            provider_id text,
            created_at timestamptz NOT NULL,
            sent_at timestamptz
        );
        CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
        CREATE INDEX outbox_recipient ON outbox(channel, kind, recipient, created_at);

        CREATE TABLE outbox_attempts (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            outbox_id bigint NOT NULL REFERENCES outbox(id),
            at timestamptz NOT NULL,
            ok integer NOT NULL,
            error text
        );
        CREATE INDEX outbox_attempts_row ON outbox_attempts(outbox_id);

        CREATE TABLE users (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE,
            role text NOT NULL CHECK (role IN ('l1', 'l2', 'l3', 'supervisor', 'admin')),
            team text,
            password_hash text,
            session_epoch integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL
        );

        CREATE TABLE api_tokens (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            user_id bigint NOT NULL REFERENCES users(id),
            token_hash text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL,
            last_used_at timestamptz
        );

        CREATE TABLE jobs (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            kind text NOT NULL,
            key text NOT NULL,
            run_at timestamptz NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}',
            state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            UNIQUE (kind, key)
        );
        CREATE INDEX jobs_due ON jobs(run_at) WHERE state = 'pending';

        -- Other instances follow committed changes through LISTEN gateway_changes
        -- (gateway.store.pgfeed): every event of an incident, and every change of a message
        -- (a body extracted, a delivery status). Sent at COMMIT, never for a rollback; the
        -- connection's application_name is the instance that made the change.
        CREATE FUNCTION gateway_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            inc record;
        BEGIN
            SELECT tracking, level INTO inc FROM incidents WHERE id = NEW.incident_id;
            PERFORM pg_notify('gateway_changes', json_build_object(
                'type', 'incident', 'id', NEW.id, 'kind', NEW.kind,
                'tracking', inc.tracking, 'level', inc.level,
                'from_level', NEW.detail ->> 'from', 'team', NEW.detail ->> 'team',
                'origin', current_setting('application_name'))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER events_notify AFTER INSERT ON events
            FOR EACH ROW EXECUTE FUNCTION gateway_notify_event();

        CREATE FUNCTION gateway_notify_message() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('gateway_changes', json_build_object(
                'type', 'incident', 'kind', 'message_changed',
                'tracking', (SELECT tracking FROM incidents WHERE id = NEW.incident_id),
                'origin', current_setting('application_name'))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER messages_notify AFTER UPDATE ON messages
            FOR EACH ROW EXECUTE FUNCTION gateway_notify_message();
        """,
    ),
    Migration(
        2,
        # Issue #15 (trust): what a customer typed is a claim of the incident, not the contact's
        # identity; API tokens expire and can be revoked. Web chat visitors' typed email/phone
        # were stored as identity before: kept as their incidents' claims, then cleared.
        """
        ALTER TABLE incidents ADD COLUMN claims TEXT;
        ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
        ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
        UPDATE incidents SET claims = (
            SELECT json_object('email', c.email, 'phone', c.phone)
            FROM contacts c WHERE c.id = incidents.contact_id
        ) WHERE contact_id IN (
            SELECT id FROM contacts
            WHERE visitor_id IS NOT NULL AND (email IS NOT NULL OR phone IS NOT NULL)
        );
        UPDATE contacts SET email = NULL, phone = NULL WHERE visitor_id IS NOT NULL;
        """,
        """
        ALTER TABLE incidents ADD COLUMN claims jsonb;
        ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
        ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
        UPDATE incidents i SET claims = jsonb_build_object('email', c.email, 'phone', c.phone)
        FROM contacts c
        WHERE c.id = i.contact_id AND c.visitor_id IS NOT NULL
            AND (c.email IS NOT NULL OR c.phone IS NOT NULL);
        UPDATE contacts SET email = NULL, phone = NULL WHERE visitor_id IS NOT NULL;
        """,
    ),
    Migration(
        3,
        # Issue #19 (performance): the change-feed triggers fire only in a session that did
        # not set gateway.notify = 'off'. An instance sets it while its change feed hears no
        # other instance (gateway.store.pgfeed): nobody would read what it sent, and the
        # notifications cost it about a tenth of its contacts per second. A WHEN clause, so
        # the trigger functions stay as they are and a quiet row queues no trigger event at
        # all. Any other session (an operator's, the CLI's) leaves the setting unset and
        # notifies as before.
        "-- SQLite: one process owns the file; there is no change feed to quiet.\n",
        """
        DROP TRIGGER events_notify ON events;
        CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW
            WHEN (current_setting('gateway.notify', true) IS DISTINCT FROM 'off')
            EXECUTE FUNCTION gateway_notify_event();
        DROP TRIGGER messages_notify ON messages;
        CREATE TRIGGER messages_notify AFTER UPDATE ON messages FOR EACH ROW
            WHEN (current_setting('gateway.notify', true) IS DISTINCT FROM 'off')
            EXECUTE FUNCTION gateway_notify_message();
        """,
    ),
]
