-- 002 seed: the 16 clinics, the exam route templates and the settings defaults
-- (DOMAIN.md). Editable by admins afterwards; re-running changes nothing.

INSERT INTO clinics (code, name, name_ar, floor, gender, requires_pin, capacity, sort_order) VALUES
    ('lab',        'Laboratory',                'المختبر',               'M', 'any',    false, 2, 1),
    ('xray',       'X-Ray',                     'الأشعة',                'M', 'any',    false, 2, 2),
    ('vitals',     'Vital Signs',               'القياسات الحيوية',      '2', 'any',    false, 1, 3),
    ('ecg',        'ECG',                       'تخطيط القلب',           '2', 'any',    false, 1, 4),
    ('audio',      'Audiometry',                'قياس السمع',            '2', 'any',    false, 1, 5),
    ('eyes',       'Ophthalmology',             'العيون',                '2', 'any',    true,  1, 6),
    ('internal',   'Internal Medicine',         'الباطنية',              '2', 'any',    true,  1, 7),
    ('ent',        'ENT',                       'أنف وأذن وحنجرة',       '2', 'any',    true,  1, 8),
    ('surgery',    'Surgery',                   'الجراحة العامة',        '2', 'any',    true,  1, 9),
    ('dental',     'Dental',                    'الأسنان',               '2', 'any',    true,  1, 10),
    ('psychiatry', 'Psychiatry',                'الطب النفسي',           '2', 'any',    true,  1, 11),
    ('derma',      'Dermatology',               'الجلدية',               '3', 'any',    true,  1, 12),
    ('bones',      'Orthopedics',               'العظام والمفاصل',       '2', 'any',    true,  1, 13),
    ('internal_f', 'Internal Medicine (Women)', 'الباطنية (نساء)',       '3', 'female', false, 1, 14),
    ('eyes_f',     'Ophthalmology (Women)',     'العيون (نساء)',         '3', 'female', false, 1, 15),
    ('derma_f',    'Dermatology (Women)',       'الجلدية (نساء)',        '3', 'female', false, 1, 16)
ON CONFLICT (code) DO NOTHING;

INSERT INTO route_templates (exam_type, gender, stages)
SELECT e.exam_type, 'male', '[["lab","xray"],["vitals"],["eyes","internal","surgery","bones","ent","psychiatry","dental"]]'::jsonb
FROM (VALUES ('recruitment'), ('promotion'), ('transfer'), ('referral'), ('contract')) AS e(exam_type)
UNION ALL SELECT 'courses', 'male', '[["lab"],["vitals"],["eyes","internal","surgery","bones","ent"]]'::jsonb
UNION ALL SELECT 'aviation', 'male', '[["lab"],["eyes","internal","ent","ecg","audio"]]'::jsonb
UNION ALL SELECT 'cooks', 'male', '[["lab"],["internal","ent","surgery"]]'::jsonb
UNION ALL
SELECT e.exam_type, 'female', '[["lab"],["vitals"],["ent","surgery","bones","psychiatry","dental"],["internal_f","eyes_f","derma_f"]]'::jsonb
FROM (VALUES ('recruitment'), ('promotion'), ('transfer'), ('referral'), ('contract'), ('cooks'), ('courses')) AS e(exam_type)
UNION ALL SELECT 'aviation', 'female', '[["lab"],["ent","surgery","bones","psychiatry","dental"],["internal_f","eyes_f","derma_f"]]'::jsonb
ON CONFLICT (exam_type, gender) DO NOTHING;

INSERT INTO settings (key, value) VALUES
    ('timezone',                 '"Asia/Qatar"'),
    ('pin_reset_time',           '"00:00"'),
    ('auto_call_enabled',        'true'),
    ('patient_max_wait_seconds', '240'),
    ('notify_near_ahead',        '3'),
    ('max_postpones',            '3'),
    ('pin_max_attempts',         '5'),
    ('pin_lockout_seconds',      '600'),
    ('events_retention_seconds', '3600'),
    ('target_wait_seconds',      '1800')
ON CONFLICT (key) DO NOTHING;
