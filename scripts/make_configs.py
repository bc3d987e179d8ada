"""Write the shipped YAML configs: offline defaults (digits, Fashion-MNIST), USB's classic-CV
protocol for CIFAR-10/100, SVHN and STL-10 (WRN-28-2 / WRN-28-8 / WRN-37-2, 2^20 iterations,
batch 64) and USB's imbalanced protocol for CIFAR-10-LT / CIFAR-100-LT (WRN-28-2, 2^18 iterations).

    python scripts/make_configs.py      # rewrites configs/{digits,fashion_mnist,classic_cv,classic_cv_imb}/
"""
import os

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")

# per-algorithm keys, as in USB's published classic-CV configs
ALG = {
    "fixmatch": dict(hard_label=True, T=0.5, p_cutoff=0.95, ulb_loss_ratio=1.0, uratio=7),
    "freematch": dict(hard_label=True, T=0.5, ema_p=0.999, ent_loss_ratio=0.001, use_quantile=False,
                      clip_thresh=False, ulb_loss_ratio=1.0, uratio=7),
    "mixmatch": dict(mixup_alpha=0.5, T=0.5, ulb_loss_ratio=75.0, unsup_warm_up=0.4, uratio=1),
    "remixmatch": dict(mixup_alpha=0.75, T=0.5, kl_loss_ratio=0.5, ulb_loss_ratio=1.5, rot_loss_ratio=0.5,
                       unsup_warm_up=0.015625, uratio=1),
}

COMMON = dict(optim="SGD", lr=0.03, momentum=0.9, weight_decay=0.0005, layer_decay=1.0, amp=False,
              use_cat=True, net_from_name=False, train_sampler="RandomSampler", include_lb_to_ulb=True,
              resume=False, overwrite=False, use_tensorboard=True, device="auto")


def offline(alg, dataset, num_labels, img_size, net, iters, batch, uratio_scale, num_val, eval_every):
    cfg = dict(algorithm=alg, dataset=dataset, num_classes=10, num_labels=num_labels, num_val=num_val,
               img_size=img_size, crop_ratio=0.875, net=net, data_dir=None, num_train_iter=iters, epoch=1,
               num_eval_iter=eval_every, num_log_iter=50, num_warmup_iter=0, batch_size=batch,
               eval_batch_size=256, ema_m=0.99, num_workers=0, seed=0,
               save_dir=f"./saved_models/{dataset}")
    cfg.update(COMMON)
    cfg.update(ALG[alg])
    cfg["uratio"] = max(1, min(cfg["uratio"], uratio_scale)) if alg in ("fixmatch", "freematch") else cfg["uratio"]
    if alg == "mixmatch":
        cfg["unsup_warm_up"] = 0.1
    return cfg


# USB's classic-CV networks and image sizes per data set
USB_NET = {"cifar10": ("wrn_28_2", 32), "cifar100": ("wrn_28_8", 32), "svhn": ("wrn_28_2", 32),
           "stl10": ("wrn_var_37_2", 96)}


def usb(alg, dataset, num_labels, seed=0):
    c100 = dataset == "cifar100"
    net, size = USB_NET[dataset]
    cfg = dict(algorithm=alg, dataset=dataset, num_classes=100 if c100 else 10, num_labels=num_labels,
               num_val=0, img_size=size, crop_ratio=0.875, net=net,
               data_dir="./data", num_train_iter=1048576, epoch=1024, num_eval_iter=5120, num_log_iter=256,
               num_warmup_iter=0, batch_size=64, eval_batch_size=256, ema_m=0.999, num_workers=4, seed=seed,
               save_dir="./saved_models/classic_cv")
    cfg.update(COMMON)
    cfg.update(ALG[alg])
    cfg["resume"] = True
    if c100:
        cfg["weight_decay"] = 0.001
    return cfg


# USB's imbalanced protocol: (dataset, labeled head count, lb_imb_ratio, unlabeled head count, ulb_imb_ratio)
USB_IMB = (("cifar10", 1500, 100, 3000, 100), ("cifar10", 1500, 150, 3000, 150), ("cifar10", 1500, 100, 3000, -100),
           ("cifar100", 150, 10, 300, 10), ("cifar100", 150, 15, 300, 15))
USB_IMB_URATIO = {"fixmatch": 2, "remixmatch": 1}


def usb_imb(alg, dataset, lb_head, lb_ratio, ulb_head, ulb_ratio, seed=0):
    """USB's classic_cv_imb config: WRN-28-2 for both data sets, 2^18 iterations, labeled samples
    kept out of the unlabeled set, ``num_labels`` / ``ulb_num_labels`` the head-class counts."""
    cfg = usb(alg, dataset, lb_head, seed)
    cfg.update(net="wrn_28_2", num_train_iter=262144, epoch=256, num_eval_iter=1024, weight_decay=0.0005,
               save_dir="./saved_models/classic_cv_imb", include_lb_to_ulb=False, lb_imb_ratio=lb_ratio,
               ulb_num_labels=ulb_head, ulb_imb_ratio=ulb_ratio, uratio=USB_IMB_URATIO[alg])
    return cfg


def hdl(cfg, warmup, every, use="target", embed="ema_pass"):
    """The same run with HDL around the base algorithm."""
    cfg = dict(cfg)
    cfg["algorithm"] = "hdl_" + cfg["algorithm"]
    cfg.update(hdl_enable=True, hdl_warmup_iter=warmup, hdl_refresh_every=every, hdl_use=use, hdl_k="adaptive",
               hdl_k_max=50, hdl_backend="auto", hdl_embed=embed)
    return cfg


def write(path, cfg, header):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(header + "\n")
        yaml.safe_dump(cfg, f, sort_keys=False)


def main():
    for alg in ALG:
        write(os.path.join(ROOT, "digits", f"{alg}.yaml"),
              offline(alg, "digits", 40, 8, "cnn_small", 1000, 16, 4, 10, 100),
              f"# {alg} on scikit-learn's bundled digits (8x8 grey), 40 labels, 10 validation images per class")
        write(os.path.join(ROOT, "digits", f"hdl_{alg}.yaml"),
              hdl(offline(alg, "digits", 40, 8, "cnn_small", 1000, 16, 4, 10, 100), 200, 200),
              f"# HDL around {alg} on digits, 40 labels: pool refreshed every 200 iterations after 200")
        write(os.path.join(ROOT, "fashion_mnist", f"hdl_{alg}.yaml"),
              hdl(offline(alg, "fashion_mnist", 40, 28, "cnn_small", 2000, 16, 3, 100, 250), 500, 500),
              f"# HDL around {alg} on Fashion-MNIST, 40 labels: pool refreshed every 500 iterations after 500")
        write(os.path.join(ROOT, "fashion_mnist", f"{alg}.yaml"),
              offline(alg, "fashion_mnist", 40, 28, "cnn_small", 2000, 16, 3, 100, 250),
              f"# {alg} on Fashion-MNIST (apt-get install dataset-fashion-mnist), 40 labels, 100 validation images per class")
        for ds, labels in (("cifar10", (40, 250, 4000)), ("cifar100", (400, 2500, 10000))):
            for n in labels:
                write(os.path.join(ROOT, "classic_cv", f"hdl_{alg}", f"hdl_{alg}_{ds}_{n}_0.yaml"),
                      hdl(usb(alg, ds, n), 5120, 1024),
                      f"# USB classic-CV protocol with HDL: {alg}, {ds}, {n} labels, one refresh per USB epoch")
                write(os.path.join(ROOT, "classic_cv", alg, f"{alg}_{ds}_{n}_0.yaml"), usb(alg, ds, n),
                      f"# USB classic-CV protocol: {alg}, {ds}, {n} labels (GPU scale; data_dir holds the python-format files)")
        for ds, labels, files in (("svhn", (40, 250, 1000), "train_32x32.mat and test_32x32.mat"),
                                  ("stl10", (40, 250, 1000), "stl10_binary/")):
            for n in labels:
                note = ("; USB also trains on the 100,000 unlabeled_X.bin images, which hdl-train does not read"
                        if ds == "stl10" else "; USB appends extra_32x32.mat to the training set, hdl-train does not")
                write(os.path.join(ROOT, "classic_cv", f"hdl_{alg}", f"hdl_{alg}_{ds}_{n}_0.yaml"),
                      hdl(usb(alg, ds, n), 5120, 1024),
                      f"# USB classic-CV protocol with HDL: {alg}, {ds}, {n} labels, one refresh per USB epoch")
                write(os.path.join(ROOT, "classic_cv", alg, f"{alg}_{ds}_{n}_0.yaml"), usb(alg, ds, n),
                      f"# USB classic-CV protocol: {alg}, {ds}, {n} labels (GPU scale; data_dir holds {files}{note})")
    for alg in USB_IMB_URATIO:
        for ds, lb, lr, ulb, ur in USB_IMB:
            name = f"{alg}_{ds}_lb{lb}_{lr}_ulb{ulb}_{ur}_0"
            write(os.path.join(ROOT, "classic_cv_imb", alg, f"{name}.yaml"), usb_imb(alg, ds, lb, lr, ulb, ur),
                  f"# USB imbalanced protocol: {alg}, {ds}-LT, labeled head {lb} (imbalance {lr}), "
                  f"unlabeled head {ulb} (imbalance {ur}); GPU scale")


if __name__ == "__main__":
    main()
