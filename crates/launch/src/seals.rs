//! `verify: required`: a family runs only while its nodes' seals hold.

use crate::error::Error;

/// Every node at or below the one whose file asks for `verify: required` must carry a seal
/// that still matches (a missing seal would otherwise be an easy way around the check), and
/// any other sealed node of the family must match too.
pub(crate) fn check(
    family: &cairn_node::Family,
    merged: &cairn_node::Merged,
    config: &cairn_config::Config,
) -> Result<(), Error> {
    let verify = &merged.config.verify;
    if verify.value != cairn_node::Verify::Required {
        return Ok(());
    }
    let trusted = config.keys_dir();
    let required_from = verify.origin.as_ref().and_then(|o| {
        family
            .nodes
            .iter()
            .position(|n| n.files.iter().any(|f| f.as_path() == &*o.file))
    });
    for (i, node) in family.nodes.iter().enumerate() {
        let must_be_sealed = required_from.is_some_and(|from| i >= from);
        if must_be_sealed && !node.path.join("etc/cairn/seal.json").exists() {
            return Err(Error::Unsealed {
                node: node.path.clone(),
                origin: verify
                    .origin
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
            });
        }
        cairn_pkg::check_seal(&node.path, &trusted).map_err(|err| Error::SealBroken {
            node: node.path.clone(),
            err,
        })?;
    }
    Ok(())
}
