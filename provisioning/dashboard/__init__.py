"""The admin's provisioning dashboard: queries (counts, lists, timeline, step chart), the page's
view, and its templates. Statuses come from provisioning.selectors through provisioning.live."""
