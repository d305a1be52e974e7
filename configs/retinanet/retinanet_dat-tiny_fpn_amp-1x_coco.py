_base_ = ['../_base_/det/retinanet_dat_fpn.py', 'mmdet::_base_/datasets/coco_detection.py',
          '../_base_/det/schedule_adamw_amp-1x.py']
