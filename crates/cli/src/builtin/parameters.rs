//! A lower bound of a built-in network's parameters, from its config (the
//! memory check before anything is created).

/// A lower bound of the parameters of `model` (exact for the dense
/// networks and both CNNs' weights), with the config key that sizes it.
pub fn lower_bound(model: &burnfit_models::ModelConfig) -> (u128, &'static str) {
    use burnfit_models::ModelConfig as M;
    let n = |x: usize| x as u128;
    let dense = |input: usize, hidden: &[usize], output: usize| {
        let mut total = 0u128;
        let mut width = n(input.max(1));
        for &h in hidden.iter().chain(std::iter::once(&output)) {
            total = total.saturating_add(width.saturating_mul(n(h)).saturating_add(n(h)));
            width = n(h);
        }
        total
    };
    let conv = |i: usize, o: usize| n(i).saturating_mul(n(o)).saturating_mul(9);
    match model {
        M::Mlp(c) => (
            dense(c.input_size, &c.hidden, c.num_classes),
            "model.hidden",
        ),
        M::MlpRegressor(c) => (
            dense(c.input_size, &c.hidden, c.output_size),
            "model.hidden",
        ),
        M::Cnn(c) => {
            let [c1, c2] = c.channels;
            let side = c.image_size / 4;
            let convs = [
                conv(c.in_channels, c1),
                conv(c1, c1),
                conv(c1, c2),
                conv(c2, c2),
            ]
            .into_iter()
            .fold(0u128, u128::saturating_add);
            let flat = c2.saturating_mul(side).saturating_mul(side);
            let fc = dense(flat, &[c.fc_size], c.num_classes);
            (convs.saturating_add(fc), "model.channels / model.fc_size")
        }
        M::SimpleCnn(c) => {
            let [c1, c2] = c.channels;
            let side = c.image_size.saturating_sub(4) / 2;
            let flat = c2.saturating_mul(side).saturating_mul(side);
            let fc = dense(flat, &[c.fc_size], c.num_classes);
            let convs = conv(c.in_channels, c1).saturating_add(conv(c1, c2));
            (convs.saturating_add(fc), "model.channels / model.fc_size")
        }
        M::ResNet(c) => {
            let blocks = n(c.blocks_per_stage).saturating_mul(2);
            let stages = c.stage_channels.iter().fold(0u128, |total, &ch| {
                total.saturating_add(conv(ch, ch).saturating_mul(blocks))
            });
            let stem = conv(c.in_channels, c.stem_channels);
            (stem.saturating_add(stages), "model.stage_channels")
        }
    }
}
