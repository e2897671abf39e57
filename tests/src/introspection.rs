//! Comparing an interface of a running object with its committed
//! introspection XML (`dbus/*.xml`): released signatures never change.

/// Asserts that `interface` of the object at `path` is exactly as committed
/// in `committed_xml` (which holds only that interface).
pub fn assert_matches_committed(
    bus: &zbus::blocking::Connection,
    path: &str,
    interface: &str,
    committed_xml: &str,
) {
    let introspectable = zbus::blocking::fdo::IntrospectableProxy::builder(bus)
        .destination(flatipfs_dbus::BUS_NAME)
        .unwrap()
        .path(path)
        .unwrap()
        .build()
        .unwrap();
    let live = introspectable.introspect().unwrap();
    let live = zbus_xml::Node::from_reader(live.as_bytes()).unwrap();
    let committed = zbus_xml::Node::from_reader(committed_xml.as_bytes()).unwrap();
    fn pick<'a>(node: &zbus_xml::Node<'a>, interface: &str) -> Option<zbus_xml::Interface<'a>> {
        node.interfaces()
            .iter()
            .find(|i| i.name() == interface)
            .cloned()
    }
    assert!(
        pick(&live, interface).is_some(),
        "{path} has no interface {interface}"
    );
    assert_eq!(
        pick(&live, interface),
        pick(&committed, interface),
        "dbus/{interface}.xml differs from the running daemon: run scripts/update-introspection.sh and review the change"
    );
    assert_eq!(
        committed.interfaces().len(),
        1,
        "dbus/{interface}.xml holds only {interface}"
    );
}
