-- Undo 002: remove the seeded rows (and anything that came to depend on them).
TRUNCATE settings, route_templates, clinics RESTART IDENTITY CASCADE;
