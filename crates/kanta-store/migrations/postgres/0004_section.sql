-- The MyKanta section each current resource is listed under (R-VIEW-1, R-VIEW-2), decided when it is
-- written (kanta_fhir::display::section), so that a section's page is one indexed query on one
-- patient's shard, newest first, whatever the patient's history holds.
ALTER TABLE resource ADD COLUMN section TEXT;
CREATE INDEX resource_by_section ON resource (patient_key, section, effective_at DESC, id DESC, resource_type DESC);
-- "What is new": every section at once, newest first.
CREATE INDEX resource_listed_by_date ON resource (patient_key, effective_at DESC, id DESC, resource_type DESC) WHERE section IS NOT NULL;
-- A page of visits finds its care documents through the encounter index without reading the
-- patient's other tokens (attached_to is then independent of the size of the history).
CREATE INDEX resource_token_by_system ON resource_token (patient_key, system, value);

-- Rows written before this migration: classified by type, and by category or main view where the
-- type serves several sections (the text match stands in for the write path's reading of the JSON).
UPDATE resource SET section = CASE
    WHEN resource_type = 'Encounter' THEN 'visits'
    WHEN resource_type = 'Condition' THEN 'diagnoses'
    WHEN resource_type = 'Observation' AND (body::text LIKE '%"laboratory"%' OR body::text LIKE '%"LAB"%') THEN 'lab'
    WHEN resource_type = 'Observation' THEN 'measurements'
    WHEN resource_type = 'ImagingStudy' THEN 'imaging'
    WHEN resource_type = 'DiagnosticReport' AND (body::text LIKE '%"RAD"%' OR body::text LIKE '%"imaging"%' OR body::text LIKE '%"RTG"%') THEN 'imaging'
    WHEN resource_type = 'DiagnosticReport' THEN 'lab'
    WHEN resource_type = 'ServiceRequest' THEN 'referrals'
    WHEN resource_type IN ('AllergyIntolerance', 'Flag') THEN 'risks'
    WHEN resource_type = 'Immunization' THEN 'vaccinations'
    WHEN resource_type = 'Procedure' AND body::text LIKE '%"SUU"%' THEN 'oral-health'
    WHEN resource_type = 'Procedure' THEN 'procedures'
    WHEN resource_type = 'CarePlan' THEN 'care-plans'
    WHEN resource_type = 'DocumentReference' THEN 'certificates'
    WHEN resource_type IN ('MedicationRequest', 'MedicationDispense') THEN 'prescriptions'
    WHEN resource_type = 'Composition' AND body::text LIKE '%"SUU"%' THEN 'oral-health'
    WHEN resource_type = 'Composition' AND body::text LIKE '%"TOD"%' THEN 'certificates'
    WHEN resource_type = 'Composition' AND body::text LIKE '%"HOISU"%' THEN 'care-plans'
    ELSE NULL
END;
