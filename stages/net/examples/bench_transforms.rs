//! Per-transform timings on one 3d_fullres-sized patch (development aid).
use nnunet_io::rng::Rng;
use nnunet_net::augment::{intensity, mirror, spatial};
use std::time::Instant;

fn t<F: FnMut()>(name: &str, n: usize, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..n {
        f();
    }
    println!("{name:>12}: {:.3} ms", s.elapsed().as_secs_f64() * 1e3 / n as f64);
}

fn main() {
    let s_in = [73usize, 80, 64];
    let p = [40usize, 56, 40];
    let n_in: usize = s_in.iter().product();
    let n: usize = p.iter().product();
    let data: Vec<f32> = (0..n_in).map(|i| ((i * 31) % 97) as f32 / 50.0).collect();
    let seg: Vec<i16> = (0..n_in).map(|i| ((i / 300) % 3) as i16).collect();
    let aff = spatial::Affine::from_angles_scales([0.3, -0.2, 0.4], [1.1; 3]);
    t("warp", 20, || {
        std::hint::black_box(spatial::warp(&data, &seg, 1, s_in, p, &aff));
    });
    let seg0 = vec![0i16; n_in];
    t("warp seg0", 20, || {
        std::hint::black_box(spatial::warp(&data, &seg0, 1, s_in, p, &aff));
    });
    let aff1 = spatial::Affine::from_angles_scales([0.0; 3], [1.37; 3]);
    t("warp scale", 20, || {
        std::hint::black_box(spatial::warp(&data, &seg0, 1, s_in, p, &aff1));
    });
    t("crop", 20, || {
        std::hint::black_box(spatial::center_crop(&data, &seg, 1, s_in, p));
    });
    let x: Vec<f32> = data[..n].to_vec();
    let mut rng = Rng::new(0);
    t("noise", 20, || {
        let mut y = x.clone();
        intensity::add_gaussian_noise(&mut y, 0.05, &mut rng);
        std::hint::black_box(y);
    });
    t("blur", 20, || {
        let mut y = x.clone();
        intensity::gaussian_blur(&mut y, p, [Some(1.0), Some(1.0), Some(1.0)]);
        std::hint::black_box(y);
    });
    t("lowres", 20, || {
        let mut y = x.clone();
        intensity::simulate_low_resolution(&mut y, p, [0.7; 3]);
        std::hint::black_box(y);
    });
    t("gamma", 20, || {
        let mut y = x.clone();
        intensity::gamma(&mut y, 1.3, false);
        std::hint::black_box(y);
    });
    t("contrast", 20, || {
        let mut y = x.clone();
        intensity::contrast(&mut y, 1.1);
        std::hint::black_box(y);
    });
    t("mirror", 20, || {
        let mut y = x.clone();
        mirror(&mut y, p, 0);
        mirror(&mut y, p, 1);
        mirror(&mut y, p, 2);
        std::hint::black_box(y);
    });
}
