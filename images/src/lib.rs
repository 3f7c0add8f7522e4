//! Snapshots as OCI artifacts: push to and pull from OCI registries, and the
//! example workload bundles. Not implemented yet.
