-- Schema version 8: a batch's statements that wait to be sent with its COMMIT refuse through
-- this function.
--
-- A write of a task's loop on PostgreSQL sends its statements together, with its BEGIN and
-- COMMIT, in one round trip. Each such statement checks what its operation would check
-- before writing, and where that fails it calls `baton_refuse`, which raises SQLSTATE BT001:
-- the whole transaction, COMMIT included, is rolled back, and the store runs the batch again
-- one statement at a time, to say exactly what refused (see `Store::task_batch`). It returns
-- a boolean so that it can stand in a WHERE clause or a select list.
CREATE FUNCTION baton_refuse(operation TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'BT001',
        MESSAGE = format('baton: %s refused in a batch sent whole; it runs again step by step',
                         operation);
END
$$;
