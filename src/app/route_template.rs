//! Maps a request path to its route template, the only form of a path that goes into
//! metrics labels and request logs. Unknown paths collapse into one value so that
//! scanners cannot create unbounded label sets.

/// Returns the route template for `path`. Query strings are never part of it.
pub fn route_template(path: &str) -> &'static str {
    const EXACT: [&str; 12] = [
        "/",
        "/nixtla",
        "/login",
        "/auth",
        "/logout",
        "/healthz",
        "/readyz",
        "/metrics",
        "/favicon.ico",
        "/api/me",
        "/openapi.json",
        "/docs",
    ];
    if let Some(route) = EXACT.iter().find(|route| **route == path) {
        return route;
    }
    if path.starts_with("/docs/") {
        return "/docs";
    }
    "unmatched"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_map_to_themselves() {
        assert_eq!(route_template("/nixtla"), "/nixtla");
        assert_eq!(route_template("/docs/"), "/docs");
    }

    #[test]
    fn unknown_paths_collapse() {
        assert_eq!(route_template("/wp-admin/x.php"), "unmatched");
        assert_eq!(route_template("/nixtla/extra"), "unmatched");
    }
}
