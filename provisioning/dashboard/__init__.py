"""The admin's provisioning dashboard: queries (counts, lists, timeline, step chart), the page's
view and its templates (each live section drawn by one template, fetched again by the page's
script), and actions (the buttons of the admin's object pages, with their confirmation pages).
Statuses come from provisioning.selectors through provisioning.live."""
