-- GORM's index names. SmartFlow's AutoMigrate looks an index up by its name on the table
-- (MySQL index names are per table) and creates it when the name is missing; a table created
-- by an earlier Switchyard migrate (template 1) has the same two indexes under other names, so
-- AutoMigrate would have added a duplicate of each. Each rename runs only if the table has the
-- old name and not the new one: a table SmartFlow created is left as it is.
ALTER TABLE {table} RENAME INDEX idx_status_next_retry_biz TO idx_outbox_status_next;
ALTER TABLE {table} RENAME INDEX idx_service_name TO idx_outbox_service_name;
