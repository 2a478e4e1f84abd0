"""What people drew: QuPath GeoJSON, Pascal VOC boxes and regions, labelled points and the cells cut around
them."""
