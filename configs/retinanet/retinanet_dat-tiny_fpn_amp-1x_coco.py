_base_ = ['../_base_/det/retinanet_dat_fpn.py', '../_base_/det/coco_detection.py',
          '../_base_/det/schedule_adamw_amp-1x.py']
