-- Acting for another person (R-MINOR, R-PROXY): whom the session acts for, by HETU and name (the
-- population register and the mandate service are asked by HETU; the page names the person), and
-- on what the switch rested: `register` (guardian, right to information) or `mandate`.
ALTER TABLE portal_session ADD COLUMN acting_for_hetu TEXT;
ALTER TABLE portal_session ADD COLUMN acting_for_name TEXT;
ALTER TABLE portal_session ADD COLUMN acting_via TEXT;
